"""Accuracy tables for docs/accuracy.md: the same as ``poserun validate``.

    python bench/accuracy.py --seconds 60 --seed 7
"""

from poserun.services.validate import main

if __name__ == "__main__":
    main()
