from satlib.cli import main

raise SystemExit(main())
