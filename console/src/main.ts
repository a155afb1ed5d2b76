// Entry point: registers the pages and starts the console.
import { role, route, setSignInPage, start } from './app';
import { adminPage } from './pages/admin';
import { auditPage } from './pages/audit';
import { avatarsPage } from './pages/avatars';
import { handoffsPage } from './pages/handoffs';
import { insightsPage } from './pages/insights';
import { knowledgeBasePage, knowledgePage } from './pages/knowledge';
import { personaPage, personasPage } from './pages/personas';
import { sessionPage, sessionsPage } from './pages/sessions';
import { signIn } from './pages/signin';

route(/^\/avatars$/, avatarsPage);
route(/^\/personas$/, personasPage);
route(/^\/personas\/([\w-]+)$/, personaPage);
route(/^\/knowledge$/, knowledgePage);
route(/^\/knowledge\/([\w-]+)$/, knowledgeBasePage);
route(/^\/sessions(?:\?.*)?$/, sessionsPage);
route(/^\/sessions\/([\w-]+)$/, sessionPage);
route(/^\/handoffs$/, handoffsPage);
route(/^\/insights$/, insightsPage);
route(/^\/audit$/, auditPage, role.canAudit);
route(/^\/admin$/, adminPage, role.isAdmin);
setSignInPage(signIn);
void start();
