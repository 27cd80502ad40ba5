# transport/ - transport farms (one per channel) on one skeleton.
