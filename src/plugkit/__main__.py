from plugkit.cli import main

main()
