from fervideo.cli import main

main()
