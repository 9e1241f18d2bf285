"""What training reads: known mine points, negative points in protected forest, training images fetched
or copied in, augmentation and the train/validation/test split. Builds on ``imagery``, ``geo``, ``pixels``."""
