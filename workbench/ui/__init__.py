"""Maps and panels for notebooks: folium result maps, ipyleaflet input panels."""
