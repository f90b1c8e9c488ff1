# Real nats-server and databases for every test in the repository.
pytest_plugins = ["jsxcore.testing.fixtures"]
