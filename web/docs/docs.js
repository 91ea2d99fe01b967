// The interactive API reference: Swagger UI over the edge's own OpenAPI document. On the
// local stack (`tessera up`) the page's config.json holds the API key, which is filled in so
// that "Try it out" works at once; elsewhere, "Authorize" asks for it.
//
// The key is filled in from `onComplete`, once the document has loaded: before that Swagger UI
// knows no security scheme, and `preauthorizeApiKey` silently does nothing.
const config = fetch('/config.json')
  .then((r) => (r.ok ? r.json() : {}))
  .catch(() => ({}));
const ui = SwaggerUIBundle({
  url: '/v1/openapi.json',
  dom_id: '#reference',
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
  // Swagger UI would otherwise send the document's URL to validator.swagger.io for a badge.
  validatorUrl: null,
  onComplete: () => config.then(({ api_key: key }) => { if (key) ui.preauthorizeApiKey('api_key', key); }),
});
