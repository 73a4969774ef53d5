from taco_plus.evaluate import main

main()
