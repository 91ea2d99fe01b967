// The interactive API reference: Swagger UI over the edge's own OpenAPI document. On the
// local stack (`tessera up`) the page's config.json holds the API key, which is filled in so
// that "Try it out" works at once; elsewhere, "Authorize" asks for it.
const ui = SwaggerUIBundle({
  url: '/v1/openapi.json',
  dom_id: '#reference',
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
  // Swagger UI would otherwise send the document's URL to validator.swagger.io for a badge.
  validatorUrl: null,
});
fetch('/config.json')
  .then((r) => (r.ok ? r.json() : {}))
  .then((config) => { if (config.api_key) ui.preauthorizeApiKey('api_key', config.api_key); })
  .catch(() => {});
