"""PDF reports of studies (matplotlib PdfPages + seaborn), and merging of multirun results."""
