"""The Hugging Face Hub side: resumable, verified, visible checkpoint download."""
