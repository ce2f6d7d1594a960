"""The UDP flow collector service: bulk receive, decode, rotation and statistics."""
