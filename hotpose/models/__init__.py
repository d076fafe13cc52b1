"""Video pose transformers split into seams (embed / blocks / norm / head) and the hourglass around them."""
