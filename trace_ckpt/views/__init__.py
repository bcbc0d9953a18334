"""Views: readers of a checkpoint's manifest and files index only; none imports rdagent or pandas at module level."""
