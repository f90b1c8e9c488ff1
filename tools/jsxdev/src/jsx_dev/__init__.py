"""jsx developer tools, not part of any service: the one-command local stack
(:mod:`jsx_dev.stack`, ``python3 dev.py up``) and the demo it runs
(:mod:`jsx_dev.demo`)."""
