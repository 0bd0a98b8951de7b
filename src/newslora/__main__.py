from newslora.cli import main

main()
