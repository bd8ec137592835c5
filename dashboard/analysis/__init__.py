"""Analysis over history rows: trends (``trends``) and notice rules (``notices``)."""
