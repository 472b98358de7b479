"""The fuse function: the case picture and its report, once a job's files are done."""
