"""What events keeps of the members service's facts: sites, households (their open
special situations) and volunteer pairings — ids and region codes only."""
