"""Making packages: the one training loop with a part per model kind, packages and their cards, soups, compacting, fine-tuning."""
