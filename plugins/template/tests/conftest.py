# The template is not installed in the workspace; make its module importable
# so its own conformance test runs in CI. A copied plugin does not need this file.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
