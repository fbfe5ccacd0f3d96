from mlops_template.cli import main

raise SystemExit(main())
