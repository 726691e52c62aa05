"""The AI read: imaging tasks and which images each covers, the network, preprocessing, the
registry of verified weights and model cards, the ONNX Runtime forward pass, and ``read``.
"""
