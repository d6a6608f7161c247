// Renders /api/openapi.json with the vendored Swagger UI (no inline script, so the page
// keeps a strict Content-Security-Policy; no validator badge, so nothing leaves the hub).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#api",
    validatorUrl: null,
    deepLinking: true,
  });
});
