from shld.cli import main

raise SystemExit(main())
