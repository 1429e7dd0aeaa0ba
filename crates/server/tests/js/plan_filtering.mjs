// Runs what Tactful serves to analytics.js through analytics-next's own code (its npm build, not a
// copy): the settings' `plan` through its Schema Filter plugin, and the `tactful-tracking-plan`
// source middleware through its source-middleware plugin.
// usage: node plan_filtering.mjs SETTINGS.json MIDDLEWARE.js EVENT_NAME...
// Prints one JSON object: for each track event name (and an identify), whether the middleware lets
// analytics-next send it ("sent" or "dropped") and the integrations the plan alone gives it.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import vm from 'node:vm'

const require = createRequire(import.meta.url)
const { Context } = require('@segment/analytics-next/dist/cjs/core/context')
const { sourceMiddlewarePlugin } = require('@segment/analytics-next/dist/cjs/plugins/middleware')
const { schemaFilter } = require('@segment/analytics-next/dist/cjs/plugins/schema-filter')

const [settingsFile, middlewareFile, ...names] = process.argv.slice(2)
const settings = JSON.parse(readFileSync(settingsFile, 'utf8'))

// The script as a browser runs it: it defines window["<name>Middleware"] for each enabled name.
const window = {}
vm.runInNewContext(readFileSync(middlewareFile, 'utf8'), { window })
const enabled = Object.keys(settings.enabledMiddleware ?? {}).filter((name) => settings.enabledMiddleware[name])
const plugins = enabled.map((name) => {
  const middleware = window[`${name.replace('@segment/', '')}Middleware`]
  if (typeof middleware !== 'function') throw new Error(`the script defines no middleware for ${name}`)
  return sourceMiddlewarePlugin(middleware, {})
})
const filter = schemaFilter(settings.plan?.track, settings)

async function outcome(event) {
  let ctx = new Context(event)
  try {
    for (const plugin of plugins) ctx = await plugin[event.type](ctx)
  } catch (error) {
    if (error?.type === 'middleware_cancellation') return { middleware: 'dropped' }
    throw error
  }
  const planned = await filter[event.type](new Context(structuredClone(event)))
  return { middleware: 'sent', plan: planned.event.integrations ?? {} }
}

const results = {}
for (const name of names) {
  results[name] = await outcome({ type: 'track', event: name, userId: 'u', properties: {}, integrations: {} })
}
results['(identify)'] = await outcome({ type: 'identify', userId: 'u', traits: {}, integrations: {} })
console.log(JSON.stringify(results))
