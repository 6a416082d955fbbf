"""Audio arithmetic both the engine and the player use (numpy only)."""
