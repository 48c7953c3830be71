"""The gRPC transport: the Open Inference Protocol's GRPCInferenceService and gRPC health."""
