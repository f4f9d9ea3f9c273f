from trackformer.cli import main

raise SystemExit(main())
