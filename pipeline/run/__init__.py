"""Running the pipeline: work directory, in-process and Ray execution, batches, job submission."""
