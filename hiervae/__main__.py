from hiervae.cli import main

raise SystemExit(main())
