// Starts Swagger UI on the docs page. A file of its own (not an inline script) so the page's
// Content-Security-Policy can allow scripts from the app only.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var container = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: container.dataset.specUrl,
    domNode: container,
    deepLinking: false,
    validatorUrl: null, // no badge image from the public validator (the CSP allows only this app)
  });
});
