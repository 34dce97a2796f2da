import { loadRepositoryState } from '../tuf/repository-state.js';

export interface PublishedApp {
  board: string;
  version: string;
  /** Its index's TUF target name: <board>/apps/<version>/app.json. */
  indexTarget: string;
}

/** The app releases (their index targets) that the repository's current targets list. */
export async function publishedApps(repoDir: string, board?: string): Promise<PublishedApp[]> {
  const state = await loadRepositoryState(repoDir);
  const apps: PublishedApp[] = [];
  for (const [name, entry] of Object.entries(state.targets.envelope.signed.targets)) {
    const custom = entry.custom;
    if (custom.kind !== 'app' || typeof custom.board !== 'string') continue;
    if (board !== undefined && custom.board !== board) continue;
    apps.push({ board: custom.board, version: String(custom.appVersion), indexTarget: name });
  }
  return apps;
}
