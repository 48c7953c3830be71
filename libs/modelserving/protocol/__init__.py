"""The Open Inference Protocol (v2): its types, codec and binary tensors; no transport."""
