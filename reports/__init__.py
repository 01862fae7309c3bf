"""Result records (JSON lines) and their renderers: terminal summary, HTML report, JUnit XML,
standalone repro scripts."""
