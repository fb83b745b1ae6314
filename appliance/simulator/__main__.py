"""`python -m appliance.simulator MODEL [flags]`; see `cli.py`."""

from appliance.simulator.cli import main

raise SystemExit(main())
