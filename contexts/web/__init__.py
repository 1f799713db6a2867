"""Staff pages: views, forms and routes of the browser UI."""
