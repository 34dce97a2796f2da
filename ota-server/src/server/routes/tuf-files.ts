import type { FastifyPluginAsync } from 'fastify';
import { sendFile, servedFolder, type ServedFolder } from '../../http/send-file.js';
import { repositoryLayout } from '../../tuf/index.js';
import { errors } from '../errors.js';

const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * The TUF repository over HTTP. With consistent snapshots every file but timestamp.json (and
 * root.json, the copy of the newest root for first trust) is named by its version or hash and
 * never changes, so caches may keep it for a year.
 */
export const tufFileRoutes: FastifyPluginAsync = async (app) => {
  const layout = repositoryLayout(app.serverConfig.repoDir);
  const metadata = await servedFolder(layout.metadataDir, (path) =>
    path === 'timestamp.json' || path === 'root.json' ? 'no-cache' : IMMUTABLE,
  );
  const targets = await servedFolder(layout.targetsDir, () => IMMUTABLE);
  // HEAD is declared, not derived from GET: fastify's derived HEAD would read a stream whole.
  const route = (prefix: string, folder: ServedFolder) =>
    app.route<{ Params: { '*': string } }>({
      method: ['GET', 'HEAD'],
      url: `${prefix}/*`,
      exposeHeadRoute: false,
      handler: async (request, reply) => {
        if (!(await sendFile(request, reply, folder, request.params['*']))) {
          throw errors.fileNotFound();
        }
        return reply;
      },
    });
  route('/tuf/metadata', metadata);
  route('/tuf/targets', targets);
};
