"""gym_openenv: every OpenEnv environment as a Gymnasium environment."""
