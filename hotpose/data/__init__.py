"""Human3.6M-style data: skeleton, cameras, npz sources, window tables and the Lightning DataModule."""
