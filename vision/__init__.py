"""Camera capture, motion gating, ONNX detection, tracking and zones; patrol and parking events."""
