"""Stage 4: the inference server, batching, routing, the prediction log and load tests."""
