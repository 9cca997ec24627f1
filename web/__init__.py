"""What people see: the user's own pages at / and the support console's layout (the admin's groups and customer page)."""
