"""Export tools (dev/user side): they need torch and friends in their own environment, never at runtime."""
