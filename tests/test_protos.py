"""The wire contract in protos/: lint-clean, generated code fresh, and the
conventions every service relies on (permissions, request_id, pagination,
event subjects, no personal data or floats on the bus) actually hold."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

from jsx.common.v1 import annotations_pb2

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
GENERATED = PROTOS / "python"
BIN = Path(sys.executable).parent

READ_PREFIXES = ("Get", "List", "Lookup", "BatchGet")  # BatchGet: AIP-231 reads
SUBJECT = re.compile(r"^jsx\.(members|funds|events)\.[a-z][a-z_]*\.[a-z][a-z_]*$")
# Field names that would carry personal data; events carry ids and regions only.
PII_FIELDS = {
    "id_number",
    "phone",
    "card_number",
    "display_name",
    "donor_display_name",
    "notes",
    "address",
    "lodged_by",
    "beneficiary_display_name",
}


def _modules() -> list[ModuleType]:
    names = sorted(
        ".".join(p.relative_to(GENERATED).with_suffix("").parts)
        for p in (GENERATED / "jsx").rglob("*.py")
        if p.name != "__init__.py"
    )
    assert names, "no generated modules: run `python3 dev.py gen`"
    return [importlib.import_module(n) for n in names]


def _files() -> list[FileDescriptor]:
    return [m.DESCRIPTOR for m in _modules() if m.__name__.endswith("_pb2")]


def _services() -> list[ServiceDescriptor]:
    return [s for f in _files() for s in f.services_by_name.values()]


def _event_messages() -> list[Descriptor]:
    return [m for f in _files() if f.name.endswith("/events.proto") for m in f.message_types_by_name.values()]


def _all_messages(d: Descriptor) -> list[Descriptor]:
    return [d, *(m for n in d.nested_types for m in _all_messages(n))]


def test_buf_lint_is_clean() -> None:
    buf = BIN / "buf"
    assert buf.exists(), f"buf not installed in {BIN} (dev dependency buf-bin)"
    run = subprocess.run([str(buf), "lint", "protos"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"buf lint failed:\n{run.stdout}{run.stderr}"


def test_generated_code_is_fresh() -> None:
    run = subprocess.run(
        [sys.executable, str(PROTOS / "generate.py"), "--check"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, f"{run.stdout}{run.stderr}"


def test_every_generated_module_imports() -> None:
    modules = _modules()
    packages = {m.__name__.rsplit(".", 1)[0] for m in modules}
    assert {"jsx.common.v1", "jsx.members.v1", "jsx.funds.v1", "jsx.events.v1"} <= packages
    # stubs ship beside the code so type checkers see every module
    for m in modules:
        assert m.__file__ and Path(m.__file__).with_suffix(".pyi").exists(), f"{m.__name__} has no .pyi stub"


def test_every_service_exists_with_list_plugins() -> None:
    names = {s.full_name for s in _services()}
    assert names == {"jsx.members.v1.MembersService", "jsx.funds.v1.FundsService", "jsx.events.v1.EventsService"}
    for s in _services():
        m = s.methods_by_name["ListPlugins"]
        assert m.input_type.full_name == "jsx.common.v1.ListPluginsRequest"


def test_every_rpc_declares_a_permission() -> None:
    missing, malformed = [], []
    for s in _services():
        service = s.full_name.split(".")[1]
        for m in s.methods:
            perm = m.GetOptions().Extensions[annotations_pb2.permission]
            if not perm:
                missing.append(m.full_name)
            elif not re.fullmatch(rf"{service}\.[a-z_]+\.[a-z_]+", perm):
                malformed.append(f"{m.full_name}: {perm!r}")
    assert not missing, f"RPCs without (jsx.common.v1.permission): {missing}"
    assert not malformed, f"permissions must be '<service>.<collection>.<verb>' of their own service: {malformed}"


def _streamed_read(m: MethodDescriptor) -> bool:
    """A server-streaming ``Stream…`` method (StreamPaymentFile: a read too large for one message)."""
    return m.name.startswith("Stream") and m.server_streaming and not m.client_streaming


def test_mutating_rpcs_carry_request_id_and_lists_paginate() -> None:
    problems = []
    for s in _services():
        for m in s.methods:
            fields = m.input_type.fields_by_name
            if m.name.startswith("List"):
                for f in ("page_size", "page_token"):
                    if f not in fields:
                        problems.append(f"{m.full_name} request lacks {f}")
                if "next_page_token" not in m.output_type.fields_by_name:
                    problems.append(f"{m.full_name} response lacks next_page_token")
            elif not (m.name.startswith(READ_PREFIXES) or _streamed_read(m)):
                request_id = fields.get("request_id")
                if request_id is None or request_id.type != FieldDescriptor.TYPE_STRING:
                    problems.append(f"{m.full_name} is mutating but has no string request_id (AIP-155)")
    assert not problems, "\n".join(problems)


def test_no_floating_point_anywhere_on_the_wire() -> None:
    floats = [
        f"{d.full_name}.{f.name}"
        for file in _files()
        for top in file.message_types_by_name.values()
        for d in _all_messages(top)
        for f in d.fields
        if f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
    ]
    assert not floats, f"money and counts are integers; float fields found: {floats}"


def test_events_have_subject_id_time_and_no_personal_data() -> None:
    events = _event_messages()
    assert len(events) >= 20, [e.full_name for e in events]
    subjects: dict[str, str] = {}
    for e in events:
        subject = e.GetOptions().Extensions[annotations_pb2.event_subject]
        service = e.full_name.split(".")[1]
        assert SUBJECT.match(subject) and subject.split(".")[1] == service, f"{e.full_name}: bad subject {subject!r}"
        assert subject not in subjects, f"{e.full_name} and {subjects[subject]} share subject {subject}"
        subjects[subject] = e.full_name
        fields = e.fields_by_name
        assert fields["event_id"].type == FieldDescriptor.TYPE_STRING, e.full_name
        occurred_at = fields["occurred_at"].message_type
        assert occurred_at is not None and occurred_at.full_name == "google.protobuf.Timestamp", e.full_name
        leaked = PII_FIELDS & set(fields)
        assert not leaked, f"{e.full_name} carries personal data fields {leaked}"
        nested_person = [f.name for f in e.fields if f.message_type and f.message_type.name == "Person"]
        assert not nested_person, f"{e.full_name} embeds a Person: {nested_person}"


def test_event_round_trip_keeps_money_exact() -> None:
    from jsx.common.v1 import common_pb2
    from jsx.events.v1 import events_pb2

    big = 9_007_199_254_740_993  # 2**53 + 1: lost by any float on the way
    msg = events_pb2.VisitRecorded(
        event_id="e1",
        visit="visits/1",
        fund="funds/2",
        money=common_pb2.Money(fen=big),
        region=common_pb2.RegionCode(code="431281101201"),
    )
    back = events_pb2.VisitRecorded.FromString(msg.SerializeToString())
    assert back.money.fen == big and back == msg
