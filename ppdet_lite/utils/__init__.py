"""Small helpers: logging, downloads, drawing."""
