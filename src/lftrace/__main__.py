from lftrace.cli import main

main()
