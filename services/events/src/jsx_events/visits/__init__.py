"""走访慰问: visits to households and the booking state of their 慰问金 in funds."""
