"""System tests: the whole local system (stand-in, ingest, workers, beat) driven through bench.harness."""
