module statecompat

go 1.19
