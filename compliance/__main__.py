from compliance.launcher import main

main()
