from openmaas.cli import main

main()
