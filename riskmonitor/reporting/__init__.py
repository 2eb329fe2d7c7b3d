"""What an operator reads: diagnostics, the charts, and the PDF report of a tick."""
