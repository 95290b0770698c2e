"""What planning reads: the device, the checkpoint's metadata, the profiles."""
