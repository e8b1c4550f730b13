"""The analytics service: profiles, autocorrelation, descriptions, explanations, balances and plots of
meter channels, computed with pandas and statsmodels on series read from the query service."""
