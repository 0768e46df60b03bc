from vmcoreos.cli.app import main

main()
